import ArgumentParser

struct OverlayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overlay",
        abstract: "The VXLAN overlay data plane (VTEP).",
        subcommands: [])
}
