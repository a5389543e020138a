// The client's contract, for dependency injection and test doubles. SdxlHostClient is the one
// implementation over the host's pipe.
// Thread-safety: implementations must allow every member to be called concurrently.

using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace SdxlHost.Client
{
    /// <summary>
    /// Typed calls for every message sdxl-host answers. Errors the host answers throw
    /// <see cref="SdxlHostException"/> (ErrorCode, Field); a connection that cannot be opened or breaks
    /// throws <see cref="SdxlHostConnectionException"/>; a cancelled token, <see cref="OperationCanceledException"/>.
    /// </summary>
    public interface ISdxlHostClient : IDisposable
    {
        /// <summary>The pipe name this client talks to.</summary>
        string PipeName { get; }

        /// <summary>True while a connection is open and has not broken (calls connect on their own when false).</summary>
        bool IsConnected { get; }

        /// <summary>Opens the connection now instead of on the first call (to fail early); does nothing when connected.</summary>
        Task ConnectAsync(CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>Closes the connection; pending calls fail with <see cref="SdxlHostConnectionException"/>; the next call reconnects.</summary>
        void Disconnect();

        /// <summary>
        /// Runs one generation (inference_request). <paramref name="progress"/> gets the host's progress
        /// events in order; cancelling the token cancels the job on the host.
        /// </summary>
        Task<EnhancedSDXLResponse> GenerateAsync(EnhancedSDXLRequest request, IProgress<GenerationProgress> progress = null,
                                                 CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>Enlarges a sent image (upscale message); progress per tile; cancelling the token cancels the job.</summary>
        Task<EnhancedSDXLResponse> UpscaleAsync(UpscaleRequest request, IProgress<GenerationProgress> progress = null,
                                                CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>Runs a control-image preprocessor on a sent image (preprocess message) and returns the map.</summary>
        Task<PreprocessResult> PreprocessAsync(PreprocessRequest request, CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>Cancels the queued or running job <paramref name="requestId"/> (any connection's); NotFound when there is none.</summary>
        Task<CancelResult> CancelAsync(string requestId, CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>Liveness, the host's version and uptime, and the round trip.</summary>
        Task<PingResult> PingAsync(CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>Queue, running jobs, clients, memory, model cache.</summary>
        Task<HostStatus> GetStatusAsync(CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>The host's Prometheus metrics text (the same as its /metrics endpoint).</summary>
        Task<HostMetrics> GetMetricsAsync(CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>Plugins (with state), schedulers, preprocessors, limits, message types, error codes.</summary>
        Task<HostCapabilities> GetCapabilitiesAsync(CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>Every model under the host's models_root, each tagged with its kind.</summary>
        Task<List<ModelEntry>> ListModelsAsync(CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>Preloads a model into the host's cache (queued; answered when loaded).</summary>
        Task<ModelLoadResult> LoadModelAsync(ModelKind kind, string name, CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>Drops a model from the host's cache (<see cref="ModelLoadResult.Unloaded"/> false when it was not loaded).</summary>
        Task<ModelLoadResult> UnloadModelAsync(ModelKind kind, string name, CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>Makes the host re-read its config file.</summary>
        Task<ReloadResult> ReloadConfigAsync(CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>Asks the host to stop gracefully (queued jobs answer SHUTTING_DOWN).</summary>
        Task ShutdownAsync(CancellationToken cancellationToken = default(CancellationToken));

        /// <summary>
        /// Sends any message and returns the whole response envelope (for message types newer than this
        /// client). Throws <see cref="SdxlHostException"/> when the host answers with success false.
        /// </summary>
        Task<IDictionary<string, object>> SendAsync(string messageType, IDictionary<string, object> data,
                                                    CancellationToken cancellationToken = default(CancellationToken));
    }
}
