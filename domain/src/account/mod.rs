//! account (being written)
