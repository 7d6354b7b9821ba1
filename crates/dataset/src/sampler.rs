//! Instance-balanced and class-balanced samplers (issue 7; being written).
