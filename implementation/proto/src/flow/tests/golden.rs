//! Captures of real kernels' connections replayed through the table.
