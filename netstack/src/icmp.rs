//! icmp (in progress)
