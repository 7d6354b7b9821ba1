//! A prepared split read into an indexed data set (issue 7; being written).
