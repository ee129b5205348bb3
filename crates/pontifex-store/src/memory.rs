//! The in-memory backend (tests). To be written.
