import Foundation
import PackagePlugin

/// Compiles the GLSL compute shaders of Kernels/vulkan to SPIR-V with glslc at build time and
/// embeds the modules into the target as a generated Swift file, so the binary carries its
/// shaders. Kernels/vulkan/shaders.list names each module, its source and its defines: type
/// variants come from one source compiled with different -D flags.
@main
struct CompileShadersPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let kernels = context.package.directoryURL.appending(path: "Kernels").appending(path: "vulkan")
        let list = kernels.appending(path: "shaders.list")
        let text = try String(contentsOf: list, encoding: .utf8)
        let glslc = try findGlslc()
        let work = context.pluginWorkDirectoryURL

        // Every source and include is an input of every module, so editing quant.glsl rebuilds.
        let sources = try FileManager.default.contentsOfDirectory(atPath: kernels.path)
            .filter { $0.hasSuffix(".comp") || $0.hasSuffix(".glsl") }
            .sorted()
            .map { kernels.appending(path: $0) }

        var commands: [Command] = []
        var embedArguments: [String] = []
        var modules: [URL] = []
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard fields.count >= 2 else {
                Diagnostics.error("shaders.list: malformed line '\(line)'")
                continue
            }
            let name = fields[0], source = kernels.appending(path: fields[1])
            let output = work.appending(path: name + ".spv")
            commands.append(.buildCommand(
                displayName: "glslc \(name)",
                executable: glslc,
                arguments: ["-O", "--target-env=vulkan1.1", "-fshader-stage=compute", "-I", kernels.path]
                    + fields.dropFirst(2).map { "-D" + $0 }
                    + ["-o", output.path, source.path],
                inputFiles: sources + [list],
                outputFiles: [output]))
            modules.append(output)
            embedArguments.append(name + "=" + output.path)
        }

        let generated = work.appending(path: "VulkanShaders.swift")
        commands.append(.buildCommand(
            displayName: "Embedding \(modules.count) SPIR-V modules",
            executable: try context.tool(named: "CompileShaders").url,
            arguments: [generated.path] + embedArguments,
            inputFiles: modules,
            outputFiles: [generated]))
        return commands
    }

    /// glslc from the Debian/Ubuntu `glslc` package, the Vulkan SDK ($VULKAN_SDK/bin) or $PATH.
    private func findGlslc() throws -> URL {
        let env = ProcessInfo.processInfo.environment
        var candidates = ["/usr/bin/glslc", "/usr/local/bin/glslc"]
        if let sdk = env["VULKAN_SDK"] { candidates.insert(sdk + "/bin/glslc", at: 0) }
        candidates += (env["PATH"] ?? "").split(separator: ":").map { $0 + "/glslc" }
        for path in candidates where FileManager.default.isExecutableFile(atPath: path) {
            return URL(fileURLWithPath: path)
        }
        throw PluginError("glslc not found (needed to compile Kernels/vulkan to SPIR-V): install it with `apt-get install glslc` or the Vulkan SDK")
    }
}

struct PluginError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
