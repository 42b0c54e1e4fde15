import ArgumentParser

struct RaftCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raft",
        abstract: "Raft consensus node and client.",
        subcommands: [])
}
