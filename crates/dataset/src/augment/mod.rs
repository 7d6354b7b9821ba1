//! Joint image + saliency augmentation (issue 7; being written).
