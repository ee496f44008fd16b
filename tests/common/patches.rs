//! f64 references for the patches family (in progress)
