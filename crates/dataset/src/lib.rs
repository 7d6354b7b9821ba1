//! ISIC2018 data: index, lesion-aware splits, synthetic data set.
