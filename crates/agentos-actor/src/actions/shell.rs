//! Interactive shells (PTY).

use crate::contract::Section;

/// A shell a client opened, kept while its VM runs.
pub struct ShellState {
    pub output: crate::live::OutputLog,
}

/// The shell area of the contract.
pub static SECTION: Section = Section { area: "Shells", actions: &[], events: &[], types: &[] };
