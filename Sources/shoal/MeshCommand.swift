// `shoal mesh`: run the routing mesh from an endpoint table, replace the table at run time, and
// inspect a running mesh.

import ArgumentParser
import Foundation
import ShoalMesh
import ShoalSystem

struct MeshCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh",
        abstract: "The routing mesh: L4 ingress proxy on published ports.",
        subcommands: [MeshRun.self, MeshApply.self, MeshInspect.self])
}

struct MeshRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Serve the published ports of an endpoint table until SIGTERM (then drain). SIGHUP reloads the file.")

    @Option(name: .long, help: "The endpoint table (JSON or YAML).") var config: String

    func run() throws {
        let spec: MeshSpec
        do { spec = try MeshConfig.load(path: config) } catch { throw ValidationError("\(config): \(error)") }
        let signals = try TerminationSignals()
        let mesh: Mesh
        do { mesh = try Mesh(spec) } catch { throw MeshFailure(description: "\(config): \(error)") }
        let ports = spec.ports.map { "\($0.port)/\($0.proto.rawValue)" }.joined(separator: " ")
        say(
            "shoal mesh: revision \(spec.revision) on \(spec.listen), \(spec.reactors) reactor(s), ports \(ports); control \(spec.control)"
        )
        try mesh.serve(control: spec.control, configPath: config, signals: signals)
        say("shoal mesh: stopped")
    }
}

struct MeshControlOption: ParsableArguments {
    @Option(name: .long, help: "The running mesh's control socket.") var control = "/run/shoal/mesh.sock"

    func send(_ r: MeshRequest) throws -> MeshReply {
        do { return try Mesh.request(r, control: control) } catch {
            throw MeshFailure(description: "\(control): \(error)")
        }
    }
}

struct MeshApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Replace a running mesh's endpoint table (one atomic swap; refused whole if malformed).")

    @Argument(help: "The new endpoint table (JSON or YAML).") var file: String
    @OptionGroup var control: MeshControlOption

    func run() throws {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ValidationError("cannot read \(file)")
        }
        let r = try control.send(MeshRequest(op: "apply", config: String(decoding: data, as: UTF8.self)))
        guard r.ok else {
            throw MeshFailure(
                description: "\(file): \(r.error ?? "refused") (revision \(r.revision ?? 0) keeps serving)")
        }
        say("shoal mesh: revision \(r.revision ?? 0) in service")
    }
}

struct MeshInspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Listeners, table revision, tasks and counters of a running mesh.")

    @OptionGroup var control: MeshControlOption
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let r = try control.send(MeshRequest(op: "inspect"))
        guard let i = r.inspection else { throw MeshFailure(description: r.error ?? "no inspection in the reply") }
        try printInspection(i, text: i.text, json: json)
    }
}

/// A failure at run time (not a usage error): printed as `Error: …` without the usage text.
struct MeshFailure: Error, CustomStringConvertible {
    var description: String
}
