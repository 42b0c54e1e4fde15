// The `shoal` command: one executable, one subcommand group per part.

import ArgumentParser

@main
struct Shoal: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shoal",
        abstract: "Routing mesh and encrypted VXLAN overlay for container clusters.",
        subcommands: [])
}
