//! Packet views.
