// The `shoal` command: one executable, one subcommand group per part, each in its own file.

import ArgumentParser

@main
struct Shoal: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shoal",
        abstract: "Routing mesh and encrypted VXLAN overlay for container clusters.",
        subcommands: [OverlayCommand.self, MeshCommand.self, RaftCommand.self, BenchCommand.self])
}
