// The client against a real sdxl-host (started by the ctest runner with the test-only plugins,
// among them test_generate: stages test_prepare + test_denoise, data.test.step_ms per step).

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using SdxlHost.Client;

namespace SdxlHost.Client.Tests
{
    /// <summary>Records progress events synchronously, in the order the client reports them.</summary>
    internal sealed class RecordingProgress : IProgress<GenerationProgress>
    {
        private readonly List<GenerationProgress> events_ = new List<GenerationProgress>();
        private readonly TaskCompletionSource<bool> first_ = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Completes when the first step event arrives (not a stage start or a detail).</summary>
        public Task FirstEvent { get { return first_.Task; } }

        /// <summary>A copy of the events so far.</summary>
        public List<GenerationProgress> Events { get { lock (events_) return new List<GenerationProgress>(events_); } }

        /// <summary>Stores the event.</summary>
        public void Report(GenerationProgress value)
        {
            lock (events_) events_.Add(value);
            if (!value.IsStageStart && value.Detail == null && value.Step > 0) first_.TrySetResult(true);
        }
    }

    /// <summary>Ping, capabilities, errors, generation, progress, cancel, concurrency, reconnect.</summary>
    [TestFixture]
    public class HostTests
    {
        private const string kTestPlugin = "test_generate";
        private const int kLongSteps = 150;   // x kLongStepMs: 15 s if a job were not stopped
        private const int kLongStepMs = 100;

        /// <summary>Waits until <paramref name="job"/> reports progress; rethrows its error if it ends first.</summary>
        private static async Task WaitForFirstProgressAsync(RecordingProgress progress, Task job)
        {
            Task first = await Task.WhenAny(progress.FirstEvent, job, Task.Delay(15000));
            if (first == job) await job;
            Assert.That(first, Is.SameAs(progress.FirstEvent), "the job started reporting progress within 15 s");
        }

        /// <summary>A small request that test_generate runs in about steps * stepMs milliseconds.</summary>
        private static EnhancedSDXLRequest TestRequest(int steps, int stepMs, long seed, int batch = 1)
        {
            var request = new EnhancedSDXLRequest();
            request.Conditioning.Prompt = "a lighthouse at dusk, test " + seed;
            request.Conditioning.NegativePrompt = "blurry";
            request.Scheduler.Steps = steps;
            request.Scheduler.GuidanceScale = 5.0;
            request.Hyperparameters.Seed = seed;
            request.Hyperparameters.Width = 64;
            request.Hyperparameters.Height = 72;
            request.Hyperparameters.BatchSize = batch;
            request.Output.ReturnBase64 = true;
            request.AdditionalData["test"] = new Dictionary<string, object> { { "step_ms", stepMs } };
            return request;
        }

        [Test]
        public void Ping_AnswersWithinASecond()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    PingResult pong = await client.PingAsync();
                    Assert.That(pong.RoundTrip, Is.LessThan(TimeSpan.FromSeconds(5)));
                    Assert.That(pong.Version, Is.Not.Null.And.Not.Empty);
                    Assert.That(pong.UptimeSeconds, Is.GreaterThan(0.0));
                    Assert.That(client.IsConnected, Is.True);
                }
            });
        }

        [Test]
        public void Capabilities_ListTheTestGeneratePluginAsLoaded()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    HostCapabilities capabilities = await client.GetCapabilitiesAsync();
                    PluginInfo plugin = capabilities.FindPlugin(kTestPlugin);
                    Assert.That(plugin, Is.Not.Null, "plugins: " + string.Join(",", capabilities.Plugins.Select(p => p.Name)));
                    Assert.That(plugin.State, Is.EqualTo("loaded"));
                    Assert.That(plugin.Reason, Is.Null);
                    CollectionAssert.Contains(plugin.Provides, "test_denoise");
                    PluginInfo badAbi = capabilities.FindPlugin("test_bad_abi");
                    Assert.That(badAbi, Is.Not.Null, "the test-plugins folder has a plugin built for another ABI");
                    Assert.That(badAbi.State, Is.EqualTo("failed"));
                    StringAssert.Contains("ABI", badAbi.Reason);
                    Assert.That(capabilities.Limits.ContainsKey("max_width"), Is.True);
                }
            });
        }

        [Test]
        public void ListModels_ShowsAFileAddedUnderModelsRoot()
        {
            TestEnvironment.Run(async () =>
            {
                string folder = Path.Combine(TestEnvironment.Require("SDXLHOST_MODELS_ROOT"), "loras");
                string name = "dotnet_listed_" + Guid.NewGuid().ToString("N").Substring(0, 8);
                string file = Path.Combine(folder, name + ".safetensors");
                Directory.CreateDirectory(folder);
                File.WriteAllBytes(file, new byte[24]);
                try
                {
                    using (var client = await TestEnvironment.ConnectAsync())
                    {
                        List<ModelEntry> models = await client.ListModelsAsync();
                        ModelEntry entry = models.SingleOrDefault(m => m.Name == name);
                        Assert.That(entry, Is.Not.Null, "listed: " + string.Join(",", models.Select(m => m.Kind + "/" + m.Name)));
                        Assert.That(entry.Kind, Is.EqualTo("loras"));
                        Assert.That(entry.Loaded, Is.False);
                    }
                }
                finally
                {
                    File.Delete(file);
                }
            });
        }

        [Test]
        public void InvalidWidth_IsATypedValidationErrorNamingTheField()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var request = TestRequest(2, 1, 7);
                    request.Hyperparameters.Width = 1001;  // not a multiple of 8
                    var error = await TestEnvironment.CatchAsync<SdxlHostException>(() => client.GenerateAsync(request));
                    Assert.That(error.ErrorCode, Is.EqualTo(SdxlHostErrorCode.ValidationError));
                    Assert.That(error.WireErrorCode, Is.EqualTo("VALIDATION_ERROR"));
                    Assert.That(error.Field, Is.EqualTo("data.dimensions.width"));
                    Assert.That(error.Response, Is.Not.Null);
                    Assert.That(error.Response.Success, Is.False);
                    await client.PingAsync();  // the connection stays usable
                }
            });
        }

        /// <summary>One bad setting per case, made through the C# model: the host names the wire field it maps to.</summary>
        [TestCase("lora_weight", "VALIDATION_ERROR", "data.lora.models[0].weight")]
        [TestCase("lora_missing", "MODEL_NOT_FOUND", "data.lora.models[0].name")]
        [TestCase("controlnet", "FEATURE_DISABLED", "data.controlnet")]
        [TestCase("priority", "VALIDATION_ERROR", "data.metadata.priority")]
        [TestCase("steps", "VALIDATION_ERROR", "data.hyperparameters.num_inference_steps")]
        [TestCase("format", "VALIDATION_ERROR", "data.output.format")]
        [TestCase("save_path", "VALIDATION_ERROR", "data.output.save_path")]
        [TestCase("batch", "VALIDATION_ERROR", "data.batch.size")]
        public void ABadSetting_IsNamedByItsWireField(string setting, string code, string field)
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var request = TestRequest(2, 1, 3);
                    switch (setting)
                    {
                        case "lora_weight": request.Conditioning.LoRAs.Add(new LoRAConfiguration { ModelPath = "style", Weight = 50 }); break;
                        case "lora_missing": request.Conditioning.LoRAs.Add(new LoRAConfiguration { ModelPath = "/any/where/absent_style.safetensors" }); break;
                        case "controlnet": request.Conditioning.ControlNets.Add(new ControlNetConfiguration { Type = "canny", ControlImage = "abc" }); break;
                        case "priority": request.Metadata.Priority = "urgent"; break;
                        case "steps": request.Scheduler.Steps = 0; break;
                        case "format": request.Output.Format = "bmp"; break;
                        case "save_path": request.Output.SavePath = "../outside"; break;
                        case "batch": request.Hyperparameters.BatchSize = 0; break;
                    }
                    var error = await TestEnvironment.CatchAsync<SdxlHostException>(() => client.GenerateAsync(request));
                    Assert.That(error.WireErrorCode, Is.EqualTo(code), error.Message);
                    Assert.That(error.ErrorCode, Is.EqualTo(SdxlHostErrorCodes.Parse(code)), error.Message);
                    Assert.That(error.Field, Is.EqualTo(field), error.Message);
                }
            });
        }

        [Test]
        public void UnknownMessageType_IsATypedError()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var error = await TestEnvironment.CatchAsync<SdxlHostException>(() => client.SendAsync("no_such_message", null));
                    Assert.That(error.ErrorCode, Is.EqualTo(SdxlHostErrorCode.UnknownMessageType));
                }
            });
        }

        [Test]
        public void DryRun_ReturnsThePlanWithoutGenerating()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var request = TestRequest(3, 1, 11);
                    request.DryRun = true;
                    EnhancedSDXLResponse response = await client.GenerateAsync(request);
                    Assert.That(response.Success, Is.True);
                    Assert.That(response.GeneratedImages, Is.Empty);
                    CollectionAssert.IsSubsetOf(new[] { "test_prepare", "test_denoise" }, response.Stages);
                    Assert.That(response.Stages.IndexOf("test_prepare"), Is.LessThan(response.Stages.IndexOf("test_denoise")));
                }
            });
        }

        [Test]
        public void Generate_ReportsProgressInOrderAndReturnsTheBatch()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    const int steps = 8;
                    var progress = new RecordingProgress();
                    EnhancedSDXLResponse response = await client.GenerateAsync(TestRequest(steps, 30, 1234, batch: 2), progress);

                    Assert.That(response.Success, Is.True);
                    CollectionAssert.Contains(response.Stages, "test_denoise");
                    Assert.That(response.GeneratedImages.Count, Is.EqualTo(2));
                    for (int i = 0; i < 2; i++)
                    {
                        GeneratedImage image = response.GeneratedImages[i];
                        Assert.That(image.Metadata.Seed, Is.EqualTo(1234 + i), "batch image i uses seed + i");
                        byte[] bytes = image.ImageBytes;
                        Assert.That(bytes, Is.Not.Null, "return_base64 was asked");
                        Assert.That(bytes.Take(4).ToArray(), Is.EqualTo(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }));
                    }
                    Assert.That(response.GeneratedImages[0].ImageData, Is.Not.EqualTo(response.GeneratedImages[1].ImageData));

                    // The runner sets queue.progress_interval_ms = 0, so every step is an event.
                    // Step events only: not the stage's start (step 0) nor progress inside a step (Detail).
                    List<GenerationProgress> denoise = progress.Events
                        .Where(e => e.Stage == "test_denoise" && !e.IsStageStart && e.Detail == null).ToList();
                    Assert.That(progress.Events.Count(e => e.Stage == "test_denoise" && e.IsStageStart), Is.EqualTo(1),
                                "the stage reports its start once");
                    Assert.That(denoise.Select(e => e.Step), Is.EqualTo(Enumerable.Range(1, steps)), "every step, in order");
                    for (int i = 0; i < denoise.Count; i++)
                    {
                        Assert.That(denoise[i].RequestId, Is.EqualTo(response.RequestId));
                        Assert.That(denoise[i].TotalSteps, Is.EqualTo(steps));
                        if (i > 0) Assert.That(denoise[i].ElapsedSeconds, Is.GreaterThanOrEqualTo(denoise[i - 1].ElapsedSeconds));
                    }
                    Assert.That(denoise.Last().Fraction, Is.EqualTo(1.0));
                }
            });
        }

        [Test]
        public void AResponseLineOfSeveralMegabytes_ArrivesIntact()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var request = TestRequest(1, 1, 31, batch: 2);
                    request.Hyperparameters.Width = 1024;
                    request.Hyperparameters.Height = 1024;
                    EnhancedSDXLResponse response = await client.GenerateAsync(request);

                    Assert.That(response.GeneratedImages.Sum(i => i.ImageData.Length), Is.GreaterThan(1 << 20), "a line of more than 1 MiB");
                    foreach (GeneratedImage image in response.GeneratedImages)
                    {
                        byte[] png = image.ImageBytes;
                        Assert.That(PngSize(png), Is.EqualTo(new[] { 1024, 1024 }), "IHDR width and height");
                    }
                    await client.PingAsync();  // the stream is still in step after the big line
                }
            });
        }

        /// <summary>Width and height from a PNG's IHDR chunk (bytes 16..23, big-endian).</summary>
        private static int[] PngSize(byte[] png)
        {
            Func<int, int> readInt = at => (png[at] << 24) | (png[at + 1] << 16) | (png[at + 2] << 8) | png[at + 3];
            return new[] { readInt(16), readInt(20) };
        }

        [Test]
        public void SavedJpeg_IsWrittenUnderOutputRootAndReported()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var request = TestRequest(2, 1, 77);
                    request.Output.ReturnBase64 = false;
                    request.Output.Format = "JPEG";
                    request.Output.Quality = 80;
                    request.Output.SavePath = "dotnet/" + Guid.NewGuid().ToString("N").Substring(0, 8);
                    EnhancedSDXLResponse response = await client.GenerateAsync(request);

                    GeneratedImage image = response.GeneratedImages.Single();
                    Assert.That(image.ImageData, Is.Null, "saved and not asked for base64");
                    Assert.That(Path.IsPathRooted(image.ImagePath), Is.True, image.ImagePath);
                    StringAssert.Contains(request.Output.SavePath, image.ImagePath.Replace('\\', '/'));
                    byte[] bytes = File.ReadAllBytes(image.ImagePath);
                    Assert.That(bytes.Take(2).ToArray(), Is.EqualTo(new byte[] { 0xFF, 0xD8 }), "a JPEG file");
                    Assert.That(image.Metadata.Seed, Is.EqualTo(77));
                    Assert.That(image.Metadata.Steps, Is.EqualTo(2));
                    Assert.That(response.ProcessingMetrics.TotalTime, Is.GreaterThan(0.0));
                }
            });
        }

        [Test]
        public void CancellingTheToken_CancelsTheJobOnTheHost()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                using (var cancellation = new CancellationTokenSource())
                {
                    var progress = new RecordingProgress();
                    Task<EnhancedSDXLResponse> job = client.GenerateAsync(TestRequest(kLongSteps, kLongStepMs, 5), progress, cancellation.Token);
                    await WaitForFirstProgressAsync(progress, job);
                    var watch = Stopwatch.StartNew();
                    cancellation.Cancel();
                    await TestEnvironment.CatchAsync<OperationCanceledException>(() => job);
                    Assert.That(job.IsCanceled, Is.True);
                    Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(2)));

                    // The host stopped the job: the next one runs at once instead of queueing behind 15 s.
                    watch.Restart();
                    EnhancedSDXLResponse next = await client.GenerateAsync(TestRequest(2, 1, 6));
                    Assert.That(next.Success, Is.True);
                    Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(8)));
                }
            }, 90);
        }

        [Test]
        public void AnAlreadyCancelledToken_EndsTheCallAtOnce()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var token = new CancellationToken(true);
                    await TestEnvironment.CatchAsync<OperationCanceledException>(() => client.GenerateAsync(TestRequest(2, 1, 1), null, token));
                    await client.PingAsync();
                }
            });
        }

        [Test]
        public void TwoConcurrentRequests_OnOneConnection_GetTheirOwnResponses()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var progressA = new RecordingProgress();
                    var progressB = new RecordingProgress();
                    // About 1 s each; the host runs one job at a time, so B waits behind A.
                    Task<EnhancedSDXLResponse> a = client.GenerateAsync(TestRequest(20, 50, 100), progressA);
                    Task<EnhancedSDXLResponse> b = client.GenerateAsync(TestRequest(16, 60, 200), progressB);
                    await client.PingAsync();
                    Assert.That(a.IsCompleted && b.IsCompleted, Is.False, "the ping was answered while the jobs ran");
                    EnhancedSDXLResponse[] both = await Task.WhenAll(a, b);

                    Assert.That(both[0].RequestId, Is.Not.EqualTo(both[1].RequestId));
                    Assert.That(both[0].GeneratedImages.Single().Metadata.Seed, Is.EqualTo(100));
                    Assert.That(both[1].GeneratedImages.Single().Metadata.Seed, Is.EqualTo(200));
                    Assert.That(progressA.Events.All(e => e.RequestId == both[0].RequestId), Is.True);
                    Assert.That(progressB.Events.All(e => e.RequestId == both[1].RequestId), Is.True);
                    Assert.That(progressA.Events.Where(e => e.Stage == "test_denoise" && !e.IsStageStart).Select(e => e.TotalSteps).Distinct(), Is.EqualTo(new[] { 20 }));
                    Assert.That(progressB.Events.Where(e => e.Stage == "test_denoise" && !e.IsStageStart).Select(e => e.TotalSteps).Distinct(), Is.EqualTo(new[] { 16 }));
                }
            });
        }

        [Test]
        public void ALostConnection_FailsPendingCalls_AndTheClientReconnects()
        {
            TestEnvironment.Run(async () =>
            {
                using (var host = new HostProcess())
                {
                    host.Start();
                    using (var client = new SdxlHostClient(host.PipeName))
                    {
                        await client.ConnectAsync();
                        var progress = new RecordingProgress();
                        Task<EnhancedSDXLResponse> job = client.GenerateAsync(TestRequest(kLongSteps, kLongStepMs, 9), progress);
                        await WaitForFirstProgressAsync(progress, job);

                        host.Kill();
                        var lost = await TestEnvironment.CatchAsync<SdxlHostConnectionException>(() => job);
                        StringAssert.Contains(host.PipeName, lost.Message);
                        Assert.That(client.IsConnected, Is.False);
                        await TestEnvironment.CatchAsync<SdxlHostConnectionException>(() => client.PingAsync());

                        host.Start();
                        await client.ConnectAsync();
                        await client.PingAsync();
                        Assert.That(client.IsConnected, Is.True);
                    }
                }
            }, 120);
        }

        [Test]
        public void Disconnect_FailsPendingCalls_AndConnectAsyncOpensANewConnection()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var progress = new RecordingProgress();
                    Task<EnhancedSDXLResponse> job = client.GenerateAsync(TestRequest(kLongSteps, kLongStepMs, 13), progress);
                    await WaitForFirstProgressAsync(progress, job);
                    client.Disconnect();
                    await TestEnvironment.CatchAsync<SdxlHostConnectionException>(() => job);
                    Assert.That(client.IsConnected, Is.False);

                    // The host cancels the jobs of a client that went away: the next job runs at once.
                    await client.ConnectAsync();
                    var watch = Stopwatch.StartNew();
                    EnhancedSDXLResponse next = await client.GenerateAsync(TestRequest(2, 1, 14));
                    Assert.That(next.Success, Is.True);
                    Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(8)));
                }
            }, 90);
        }

        [Test]
        public void ConnectingToAPipeNobodyServes_FailsClearly()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = new SdxlHostClient("sdxlhost-dotnet-nobody-" + Guid.NewGuid().ToString("N")))
                {
                    var error = await TestEnvironment.CatchAsync<SdxlHostConnectionException>(() => client.ConnectAsync(300));
                    StringAssert.Contains("could not connect", error.Message);
                    await TestEnvironment.CatchAsync<SdxlHostConnectionException>(() => client.PingAsync());
                }
            });
        }
    }
}
