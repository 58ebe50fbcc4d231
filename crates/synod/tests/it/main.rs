//! End-to-end tests of the `synod` binary: configuration errors, certificates, a cluster of processes.
