//! Integration tests for synod-log.
