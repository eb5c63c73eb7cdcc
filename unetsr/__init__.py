"""unetsr: a perceptual-loss U-Net upscaler for photographs."""

__version__ = "0.1.0"
