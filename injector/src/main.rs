//! `workspace-injector`: the init container's program (see INJECTION.md).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
