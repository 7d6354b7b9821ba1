//! Lesion-aware mixup ratios and patch-wise token mixing as candle custom ops.
