"""Measurements askgpt runs on itself: needle in a haystack, generation speed, start-up time."""
