"""Datasets as uint8 tensors in memory: CIFAR-10/100, SVHN, STL-10, (Fashion-)MNIST, image folders and synthetic
images (``datasets``, ``archives``, ``folders``, ``synthetic``); class-balanced subsets and the SSLMem splits S_S/S_C/S_I/S_E
(``splits``); fake archives for dry runs (``fakes``). Imports nothing above it but ``memlab.streams``.
"""
