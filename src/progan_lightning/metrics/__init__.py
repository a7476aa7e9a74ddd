"""Quality metrics of generated images: SWD (the paper's), MS-SSIM diversity, FID and the
Inception Score; see ``registry.METRICS``."""
