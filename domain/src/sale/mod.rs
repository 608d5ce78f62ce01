//! sale (being written)
