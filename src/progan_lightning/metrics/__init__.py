"""Quality metrics of generated images: SWD (the paper's), MS-SSIM diversity, FID; see
``registry.METRICS``."""
