//! arp (in progress)
