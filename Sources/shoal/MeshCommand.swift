import ArgumentParser

struct MeshCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh",
        abstract: "The routing mesh: L4 ingress proxy on published ports.",
        subcommands: [])
}
