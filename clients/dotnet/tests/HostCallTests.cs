// Every typed call against a real sdxl-host with the test-only plugins (the ctest runner starts
// it): connect on first use, several threads sharing one client, status, cancel by request id,
// load/unload model, reload_config, capabilities' error codes, the service's Success = false,
// and a private host restarted under a client (killed, then shut down) that the next call reaches.

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using SdxlHost.Client;

namespace SdxlHost.Client.Tests
{
    /// <summary>The client's typed calls and connection handling against the test plugins.</summary>
    [TestFixture]
    public class HostCallTests
    {
        private const int kLongSteps = 150;   // x kLongStepMs: 15 s if a job were not stopped
        private const int kLongStepMs = 100;

        private static EnhancedSDXLRequest TestRequest(int steps, int stepMs, long seed, string requestId = null)
        {
            var request = new EnhancedSDXLRequest { RequestId = requestId };
            request.Conditioning.Prompt = "a lighthouse, call test " + seed;
            request.Scheduler.Steps = steps;
            request.Hyperparameters.Seed = seed;
            request.Hyperparameters.Width = 64;
            request.Hyperparameters.Height = 64;
            request.Output.ReturnBase64 = true;
            request.AdditionalData["test"] = new Dictionary<string, object> { { "step_ms", stepMs } };
            return request;
        }

        private static string UniqueId(string what)
        {
            return "dotnet-" + what + "-" + Guid.NewGuid().ToString("N").Substring(0, 10);
        }

        private static async Task WaitForFirstProgressAsync(RecordingProgress progress, Task job)
        {
            Task first = await Task.WhenAny(progress.FirstEvent, job, Task.Delay(15000));
            if (first == job) await job;
            Assert.That(first, Is.SameAs(progress.FirstEvent), "the job started reporting progress within 15 s");
        }

        [Test]
        public void AClient_ConnectsOnItsFirstCall()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = new SdxlHostClient(TestEnvironment.PipeName))
                {
                    Assert.That(client.IsConnected, Is.False);
                    EnhancedSDXLResponse response = await client.GenerateAsync(TestRequest(2, 1, 41));
                    Assert.That(response.Success, Is.True);
                    Assert.That(response.GeneratedImages.Single().Metadata.Seed, Is.EqualTo(41));
                    Assert.That(client.IsConnected, Is.True);
                }
            });
        }

        [Test]
        public void OneClient_SharedByEightThreads_AnswersEachItsOwn()
        {
            const int threads = 8;
            using (var client = new SdxlHostClient(TestEnvironment.PipeName))  // not connected: the threads race to connect
            {
                var results = new EnhancedSDXLResponse[threads];
                var pings = new PingResult[threads];
                var errors = new List<Exception>();
                var start = new Barrier(threads);
                var workers = Enumerable.Range(0, threads).Select(i => new Thread(() =>
                {
                    try
                    {
                        start.SignalAndWait();
                        pings[i] = client.PingAsync().Result;
                        results[i] = client.GenerateAsync(TestRequest(3, 5, 500 + i)).Result;
                    }
                    catch (Exception error)
                    {
                        lock (errors) errors.Add(error);
                    }
                })).ToList();
                workers.ForEach(t => t.Start());
                foreach (var worker in workers)
                    Assert.That(worker.Join(TimeSpan.FromSeconds(60)), Is.True, "a thread did not finish within 60 s");

                Assert.That(errors, Is.Empty, string.Join("\n", errors.Select(e => e.ToString())));
                for (int i = 0; i < threads; i++)
                {
                    Assert.That(results[i].Success, Is.True);
                    Assert.That(results[i].GeneratedImages.Single().Metadata.Seed, Is.EqualTo(500 + i), "thread " + i + " got its own answer");
                    Assert.That(pings[i].Version, Is.Not.Null);
                }
                Assert.That(results.Select(r => r.RequestId).Distinct().Count(), Is.EqualTo(threads));
                Assert.That(client.IsConnected, Is.True);
            }
        }

        [Test]
        public void Status_ShowsTheRunningAndQueuedJobs_AndCancelByIdStopsBoth()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = new SdxlHostClient(TestEnvironment.PipeName))
                using (var other = new SdxlHostClient(TestEnvironment.PipeName))
                {
                    string runningId = UniqueId("running"), queuedId = UniqueId("queued");
                    var progress = new RecordingProgress();
                    Task<EnhancedSDXLResponse> running = client.GenerateAsync(TestRequest(kLongSteps, kLongStepMs, 1, runningId), progress);
                    await WaitForFirstProgressAsync(progress, running);
                    Task<EnhancedSDXLResponse> queued = client.GenerateAsync(TestRequest(kLongSteps, kLongStepMs, 2, queuedId));

                    HostStatus status = null;
                    for (int attempt = 0; attempt < 50; attempt++)  // the second job reaches the queue asynchronously
                    {
                        status = await other.GetStatusAsync();
                        if (status.Queued["normal"].Contains(queuedId)) break;
                        await Task.Delay(20);
                    }
                    RunningJob job = status.Running.SingleOrDefault(r => r.RequestId == runningId);
                    Assert.That(job, Is.Not.Null, "running: " + string.Join(",", status.Running.Select(r => r.RequestId)));
                    Assert.That(job.Stage, Is.EqualTo("test_denoise"));
                    Assert.That(job.TotalSteps, Is.EqualTo(kLongSteps));
                    Assert.That(job.Kind, Is.EqualTo("generation"));
                    CollectionAssert.Contains(status.Queued["normal"], queuedId);
                    Assert.That(status.QueueDepth, Is.GreaterThanOrEqualTo(1));
                    Assert.That(status.Clients, Is.GreaterThanOrEqualTo(2));
                    Assert.That(status.Executors, Is.GreaterThanOrEqualTo(1));
                    Assert.That(status.RssBytes, Is.GreaterThan(0));
                    Assert.That(status.UptimeSeconds, Is.GreaterThan(0.0));
                    Assert.That(status.ShuttingDown, Is.False);
                    Assert.That(status.ConfigFile, Is.Not.Null.And.Not.Empty);

                    // Any connection may cancel any job, by the id its owner chose.
                    CancelResult cancelQueued = await other.CancelAsync(queuedId);
                    Assert.That(cancelQueued.Cancelled, Is.True);
                    Assert.That(cancelQueued.State, Is.EqualTo("queued"));
                    CancelResult cancelRunning = await other.CancelAsync(runningId);
                    Assert.That(cancelRunning.Cancelled, Is.True);
                    Assert.That(cancelRunning.RequestId, Is.EqualTo(runningId));
                    Assert.That(cancelRunning.State, Is.EqualTo("running"));

                    foreach (var cancelled in new[] { running, queued })
                    {
                        var error = await TestEnvironment.CatchAsync<SdxlHostException>(() => cancelled);
                        Assert.That(error.ErrorCode, Is.EqualTo(SdxlHostErrorCode.Cancelled));
                    }
                    var notFound = await TestEnvironment.CatchAsync<SdxlHostException>(() => other.CancelAsync(runningId));
                    Assert.That(notFound.ErrorCode, Is.EqualTo(SdxlHostErrorCode.NotFound));
                    Assert.That(notFound.Field, Is.EqualTo("data.request_id"));
                }
            }, 90);
        }

        [Test]
        public void LoadAndUnloadModel_GoThroughTheHostsCache()
        {
            TestEnvironment.Run(async () =>
            {
                string folder = Path.Combine(TestEnvironment.Require("SDXLHOST_MODELS_ROOT"), "checkpoints");
                string name = "dotnet_ckpt_" + Guid.NewGuid().ToString("N").Substring(0, 8);
                string file = Path.Combine(folder, name + ".safetensors");
                string loraFile = Path.Combine(folder, "..", "loras", name + ".safetensors");
                Directory.CreateDirectory(folder);
                Directory.CreateDirectory(Path.GetDirectoryName(loraFile));
                File.WriteAllBytes(file, new byte[40]);
                try
                {
                    using (var client = new SdxlHostClient(TestEnvironment.PipeName))
                    {
                        ModelLoadResult loaded = await client.LoadModelAsync(ModelKind.Checkpoints, name);
                        Assert.That(loaded.Loaded, Is.True);
                        Assert.That(loaded.Kind, Is.EqualTo("checkpoints"));
                        Assert.That(loaded.Name, Is.EqualTo(name));
                        CachedModel cached = loaded.Cache.Models.SingleOrDefault(m => m.Name == name);
                        Assert.That(cached, Is.Not.Null);
                        Assert.That(cached.Bytes, Is.EqualTo(40));
                        Assert.That(cached.Variant, Is.EqualTo("test_generate"));
                        Assert.That((await client.ListModelsAsync()).Single(m => m.Name == name).Loaded, Is.True);
                        Assert.That((await client.GetStatusAsync()).Models.Models.Any(m => m.Name == name), Is.True);

                        ModelLoadResult unloaded = await client.UnloadModelAsync(ModelKind.Checkpoints, name);
                        Assert.That(unloaded.Unloaded, Is.True);
                        Assert.That(unloaded.Cache.Models.Any(m => m.Name == name), Is.False);
                        Assert.That((await client.UnloadModelAsync(ModelKind.Checkpoints, name)).Unloaded, Is.False, "not loaded any more");

                        var missing = await TestEnvironment.CatchAsync<SdxlHostException>(() => client.LoadModelAsync(ModelKind.Checkpoints, name + "_absent"));
                        Assert.That(missing.ErrorCode, Is.EqualTo(SdxlHostErrorCode.ModelNotFound));
                        Assert.That(missing.Field, Is.EqualTo("data.name"));
                        File.Copy(file, loraFile);
                        var noPreloader = await TestEnvironment.CatchAsync<SdxlHostException>(() => client.LoadModelAsync(ModelKind.Loras, name));
                        Assert.That(noPreloader.ErrorCode, Is.EqualTo(SdxlHostErrorCode.FeatureDisabled), noPreloader.Message);
                        Assert.That(noPreloader.Field, Is.EqualTo("data.kind"), noPreloader.Message);
                    }
                }
                finally
                {
                    File.Delete(file);
                    File.Delete(loraFile);
                }
            });
        }

        [Test]
        public void ReloadConfig_ReReadsTheFile()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = new SdxlHostClient(TestEnvironment.PipeName))
                {
                    ReloadResult reload = await client.ReloadConfigAsync();
                    Assert.That(reload.Reloaded, Is.True);
                    Assert.That(reload.Config["pipe_name"], Is.EqualTo(TestEnvironment.PipeName));
                    Assert.That(reload.Plugins.Single(p => p.Name == "test_generate").State, Is.EqualTo("loaded"));
                    await client.PingAsync();
                }
            });
        }

        [Test]
        public void Capabilities_NameEveryMessageThisClientSends_AndEveryErrorCodeIsKnown()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = new SdxlHostClient(TestEnvironment.PipeName))
                {
                    HostCapabilities capabilities = await client.GetCapabilitiesAsync();
                    CollectionAssert.IsSubsetOf(new[]
                    {
                        "inference_request", "upscale", "preprocess", "cancel", "ping", "capabilities", "list_models",
                        "load_model", "unload_model", "status", "metrics", "reload_config", "shutdown",
                    }, capabilities.MessageTypes);
                    Assert.That(capabilities.ErrorCodes, Is.Not.Empty);
                    foreach (string code in capabilities.ErrorCodes)
                        Assert.That(SdxlHostErrorCodes.Parse(code), Is.Not.EqualTo(SdxlHostErrorCode.Unknown), code + " is missing from SdxlHostErrorCode");
                    Assert.That(capabilities.HostVersion, Is.Not.Null.And.Not.Empty);
                    Assert.That(capabilities.AbiVersion, Is.GreaterThan(0));
                    Assert.That(capabilities.Device, Is.EqualTo("cpu"));
                    CollectionAssert.Contains(capabilities.OutputFormats, "png");
                    CollectionAssert.Contains(capabilities.PreloadableModelKinds, "checkpoints");
                }
            });
        }

        [Test]
        public void Metrics_ReturnThePrometheusText()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = new SdxlHostClient(TestEnvironment.PipeName))
                {
                    await client.GenerateAsync(TestRequest(1, 1, 95));
                    HostMetrics metrics = await client.GetMetricsAsync();
                    StringAssert.StartsWith("text/plain", metrics.ContentType);
                    StringAssert.Contains("# TYPE ", metrics.Text);
                    StringAssert.Contains("sdxlhost_responses_total", metrics.Text);
                }
            });
        }

        [Test]
        public void PostProcessingUpscale_ReachesTheUpscalerStage()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = new SdxlHostClient(TestEnvironment.PipeName))
                {
                    var request = TestRequest(2, 1, 61);
                    request.PostProcessing.Upscale.Scale = 2;
                    EnhancedSDXLResponse response = await client.GenerateAsync(request);
                    CollectionAssert.Contains(response.Stages, "test_upscale");
                    Assert.That(response.GeneratedImages.Single().Width, Is.EqualTo(128), "test_upscale doubles the image");
                }
            });
        }

        [Test]
        public void Preprocess_RunsARegisteredPreprocessor_AndNamesAnUnknownOne()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = new SdxlHostClient(TestEnvironment.PipeName))
                {
                    // A real PNG to process: one the host just made (test_generate).
                    byte[] png = (await client.GenerateAsync(TestRequest(1, 1, 91))).GeneratedImages.Single().ImageBytes;
                    PreprocessResult inverted = await client.PreprocessAsync(new PreprocessRequest
                    {
                        Image = ImageInput.FromBytes(png), Preprocessor = new PreprocessorConfiguration("test_invert"),
                    });
                    Assert.That(inverted.Preprocessor, Is.EqualTo("test_invert"));
                    Assert.That(inverted.Format, Is.EqualTo("png"));
                    Assert.That(new[] { inverted.Width, inverted.Height, inverted.Channels }, Is.EqualTo(new[] { 64, 64, 3 }));
                    Assert.That(inverted.ImageBytes.Take(4).ToArray(), Is.EqualTo(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }));
                    Assert.That(inverted.ImageBytes, Is.Not.EqualTo(png));

                    var request = new PreprocessRequest { Image = png, Preprocessor = PreprocessorConfiguration.Canny() };
                    var error = await TestEnvironment.CatchAsync<SdxlHostException>(() => client.PreprocessAsync(request));
                    Assert.That(error.ErrorCode, Is.EqualTo(SdxlHostErrorCode.ValidationError), error.Message);
                    Assert.That(error.Field, Is.EqualTo("data.preprocessor.name"), error.Message);
                    StringAssert.Contains("test_invert", error.Message, "the known ones are listed");
                }
            });
        }

        [Test]
        public void Service_AnswersHostErrorsWithSuccessFalse_AndGeneratesWithProgress()
        {
            TestEnvironment.Run(async () =>
            {
                using (var service = new EnhancedSDXLService(TestEnvironment.PipeName))
                {
                    var bad = TestRequest(2, 1, 71);
                    bad.Hyperparameters.Width = 1001;
                    EnhancedSDXLResponse refused = await service.GenerateEnhancedAsync(bad);
                    Assert.That(refused.Success, Is.False);
                    Assert.That(refused.ErrorCode, Is.EqualTo(SdxlHostErrorCode.ValidationError));
                    Assert.That(refused.ErrorField, Is.EqualTo("data.dimensions.width"));
                    StringAssert.Contains("multiple of 8", refused.Error);
                    Assert.That(refused.GeneratedImages, Is.Empty);

                    var progress = new RecordingProgress();
                    EnhancedSDXLResponse ok = await service.GenerateEnhancedAsync(TestRequest(4, 1, 72), progress);
                    Assert.That(ok.Success, Is.True);
                    Assert.That(ok.ErrorCode, Is.EqualTo(SdxlHostErrorCode.None));
                    Assert.That(progress.Events.Where(e => e.Stage == "test_denoise" && !e.IsStageStart && e.Detail == null).Select(e => e.Step), Is.EqualTo(new[] { 1, 2, 3, 4 }));
                }
            });
        }

        [Test]
        public void AHostRestart_FailsTheCallInFlight_AndTheNextCallReconnects()
        {
            TestEnvironment.Run(async () =>
            {
                using (var host = new HostProcess())
                using (var client = new SdxlHostClient(host.PipeName))
                {
                    host.Start();
                    var progress = new RecordingProgress();
                    Task<EnhancedSDXLResponse> job = client.GenerateAsync(TestRequest(kLongSteps, kLongStepMs, 81), progress);
                    await WaitForFirstProgressAsync(progress, job);

                    host.Kill();
                    host.Start();
                    var lost = await TestEnvironment.CatchAsync<SdxlHostConnectionException>(() => job);
                    StringAssert.Contains("lost while the call was in flight", lost.Message);
                    StringAssert.Contains(host.PipeName, lost.Message);

                    EnhancedSDXLResponse next = await client.GenerateAsync(TestRequest(2, 1, 82));  // no ConnectAsync
                    Assert.That(next.Success, Is.True);
                    Assert.That(client.IsConnected, Is.True);

                    // A graceful restart (shutdown message) is the same for the client.
                    await client.ShutdownAsync();
                    Assert.That(host.WaitForExit(TimeSpan.FromSeconds(20)), Is.True, "the host stopped after shutdown");
                    host.Start();
                    Assert.That((await client.PingAsync()).Version, Is.Not.Null);
                    Assert.That((await client.GenerateAsync(TestRequest(2, 1, 83))).Success, Is.True);
                }
            }, 120);
        }

        [Test]
        public void ACallWithNoHostServing_FailsClearly_AndTheClientWorksOnceItServes()
        {
            TestEnvironment.Run(async () =>
            {
                using (var host = new HostProcess())
                using (var client = new SdxlHostClient(new SdxlHostClientOptions { PipeName = host.PipeName, ConnectTimeout = TimeSpan.FromMilliseconds(300) }))
                {
                    var error = await TestEnvironment.CatchAsync<SdxlHostConnectionException>(() => client.PingAsync());
                    StringAssert.Contains("could not connect", error.Message);
                    StringAssert.Contains(host.PipeName, error.Message);
                    host.Start();
                    Assert.That((await client.PingAsync()).Version, Is.Not.Null);
                }
            }, 60);
        }
    }
}
