//! `workspace-injector`: the init container's program (see INJECTION.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    workspace_injector::cli::main()
}
