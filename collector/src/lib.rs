//! `dsreg-collector` library.
