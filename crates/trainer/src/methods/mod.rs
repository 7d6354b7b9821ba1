//! One file per training method (being written).
