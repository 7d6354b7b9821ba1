//! Parallel batch loader (issue 7; being written).
