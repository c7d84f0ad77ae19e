//! Shared support for the end-to-end tests (control plane, namespaces, kubectl).
