//! stock (being written)
