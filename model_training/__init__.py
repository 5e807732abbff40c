"""Training, evaluation, audit and export of the models that CXR Screener bundles.

Uses TensorFlow/Keras (the ``train`` extra). Images are read and preprocessed
with the application's own ``desktop.core.imaging`` and
``desktop.core.preprocess`` so training and the app see identical pixels.
"""
