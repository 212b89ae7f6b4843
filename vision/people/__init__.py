"""People in a photo: faces found by MTCNN (``nets``: its three networks as ONNX graphs built
without torch; ``detector``: the cascade) and whole upright bodies by OpenCV's HOG detector,
merged into persons with positions (``finder``)."""
