"""The model: a saved folder (``folder``, read without torch), the network (``encoders``, ``fusion``,
``network``, ``crf``; PyTorch), tagging in windows and batches over any runtime's emissions (``runner``), the
PyTorch model that trains and saves (``torch_model``) and its card (``card``). This file imports nothing."""
