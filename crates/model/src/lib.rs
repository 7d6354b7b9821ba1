//! candle Hybrid-ViT (ResNet-50-D trunk + ViT), projection heads and momentum key network.
