//! annual (being written)
