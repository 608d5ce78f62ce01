//! market (being written)
