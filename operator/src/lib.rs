//! socketfleet operator (being built).
