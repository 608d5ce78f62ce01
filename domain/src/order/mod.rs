//! order (being written)
