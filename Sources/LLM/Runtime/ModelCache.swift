import Foundation

/// Where llm-gpu keeps models: $LLM_GPU_CACHE, else $XDG_CACHE_HOME/llm-gpu, else ~/.cache/llm-gpu
/// (scripts/fetch-model follows the same rule). Empty variables count as unset.
public enum ModelCache {
    public static let defaultModelFile = "SmolLM2-135M-Instruct-Q4_1.gguf"

    public static var directory: String {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["LLM_GPU_CACHE"], !dir.isEmpty { return dir }
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return xdg + "/llm-gpu" }
        return FileManager.default.homeDirectoryForCurrentUser.path + "/.cache/llm-gpu"
    }

    /// The path `file` has in the cache (whether or not it is there).
    public static func path(_ file: String) -> String { directory + "/" + file }
}
