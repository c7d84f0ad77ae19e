//! CRD types, operator configuration and the rules shared by the webhook and the controller.
