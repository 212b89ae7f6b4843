"""What a photo file itself says: EXIF date, camera and GPS position (``photo``), the nearest
place from an offline gazetteer (``places``), and the main colours in words (``colours``)."""
