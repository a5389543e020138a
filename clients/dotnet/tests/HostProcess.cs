// Where the tests find the host: the pipe of the sdxl-host that the ctest runner started
// (SDXLHOST_PIPE_NAME), and, for tests that need a host of their own (to kill it), the binary and
// the test-plugins folder (SDXLHOST_BIN, SDXLHOST_TEST_PLUGIN_DIR). HostProcess starts and stops
// such a private host with a temporary config.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using SdxlHost.Client;

namespace SdxlHost.Client.Tests
{
    /// <summary>Settings handed to the tests by the ctest runner through the environment.</summary>
    internal static class TestEnvironment
    {
        /// <summary>The value of <paramref name="name"/>; fails the test (never skips) when unset.</summary>
        public static string Require(string name)
        {
            string value = Environment.GetEnvironmentVariable(name);
            if (string.IsNullOrEmpty(value))
                Assert.Fail(name + " is not set: run these tests through ctest (label dotnet), which starts the host");
            return value;
        }

        /// <summary>Pipe name of the shared host.</summary>
        public static string PipeName { get { return Require("SDXLHOST_PIPE_NAME"); } }

        /// <summary>Runs <paramref name="body"/> to completion (NUnit 2.6 runs synchronous tests best), with a time limit.</summary>
        public static void Run(Func<Task> body, int timeoutSeconds = 60)
        {
            var task = body();
            if (!task.Wait(TimeSpan.FromSeconds(timeoutSeconds)))
                Assert.Fail("test did not finish within " + timeoutSeconds + " s");
        }

        /// <summary>Awaits <paramref name="body"/> and returns the exception of type T it throws; fails otherwise.</summary>
        public static async Task<T> CatchAsync<T>(Func<Task> body) where T : Exception
        {
            try
            {
                await body();
            }
            catch (T expected)
            {
                return expected;
            }
            catch (Exception other)
            {
                Assert.Fail("expected " + typeof(T).Name + " but got " + other.GetType().Name + ": " + other.Message);
            }
            Assert.Fail("expected " + typeof(T).Name + " but the call succeeded");
            return null;
        }

        /// <summary>A client connected to the shared host.</summary>
        public static async Task<SdxlHostClient> ConnectAsync()
        {
            var client = new SdxlHostClient(PipeName);
            await client.ConnectAsync(10000);
            return client;
        }
    }

    /// <summary>A private sdxl-host process (own pipe, own temp folders) for tests that must stop it.</summary>
    internal sealed class HostProcess : IDisposable
    {
        private readonly string workDir_;
        private Process process_;

        /// <summary>Prepares a config in a fresh temp folder; call <see cref="Start"/> to run the host.</summary>
        public HostProcess()
        {
            workDir_ = Path.Combine(Path.GetTempPath(), "sdxlhost-dotnet-" + Guid.NewGuid().ToString("N").Substring(0, 12));
            Directory.CreateDirectory(Path.Combine(workDir_, "models"));
            Directory.CreateDirectory(Path.Combine(workDir_, "output"));
            PipeName = "sdxlhost-dotnet-private-" + Guid.NewGuid().ToString("N").Substring(0, 12);
            var config = new Dictionary<string, object>
            {
                { "pipe_name", PipeName },
                { "models_root", Path.Combine(workDir_, "models") },
                { "output_root", Path.Combine(workDir_, "output") },
                { "plugins", new Dictionary<string, object> { { "dir", TestEnvironment.Require("SDXLHOST_TEST_PLUGIN_DIR") } } },
                { "queue", new Dictionary<string, object> { { "progress_interval_ms", 0 } } },
                { "threads", 1 },
            };
            ConfigPath = Path.Combine(workDir_, "config.json");
            File.WriteAllText(ConfigPath, WireJson.Serialize(config));
        }

        /// <summary>The private host's pipe name.</summary>
        public string PipeName { get; private set; }

        /// <summary>The private host's config file.</summary>
        public string ConfigPath { get; private set; }

        /// <summary>Starts `sdxl-host serve --config` and waits until its pipe accepts a connection.</summary>
        public void Start()
        {
            var start = new ProcessStartInfo(TestEnvironment.Require("SDXLHOST_BIN"), "serve --config \"" + ConfigPath + "\"")
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            process_ = Process.Start(start);
            process_.OutputDataReceived += (s, e) => { };
            process_.ErrorDataReceived += (s, e) => { };
            process_.BeginOutputReadLine();
            process_.BeginErrorReadLine();
            WaitUntilServing();
        }

        /// <summary>Ends the host at once (SIGKILL): connections break without a goodbye.</summary>
        public void Kill()
        {
            if (process_ == null) return;
            if (!process_.HasExited) process_.Kill();
            process_.WaitForExit(10000);
            process_.Dispose();
            process_ = null;
        }

        /// <summary>Waits until the host exits on its own (after a shutdown message); true when it did within <paramref name="timeout"/>.</summary>
        public bool WaitForExit(TimeSpan timeout)
        {
            if (process_ == null) return true;
            if (!process_.WaitForExit((int)timeout.TotalMilliseconds)) return false;
            process_.WaitForExit();  // drain the redirected output
            process_.Dispose();
            process_ = null;
            return true;
        }

        /// <summary>Kills the host if running and removes the temp folder and the socket a kill leaves behind.</summary>
        public void Dispose()
        {
            Kill();
            try { Directory.Delete(workDir_, true); } catch (IOException) { }
            try { File.Delete(Path.Combine(Path.GetTempPath(), "CoreFxPipe_" + PipeName)); } catch (IOException) { }
        }

        private void WaitUntilServing()
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (DateTime.UtcNow < deadline)
            {
                if (process_.HasExited) Assert.Fail("the private sdxl-host exited with code " + process_.ExitCode + " at start");
                using (var probe = new SdxlHostClient(PipeName))
                {
                    try
                    {
                        probe.ConnectAsync(500).Wait();
                        return;
                    }
                    catch (AggregateException)
                    {
                        Thread.Sleep(100);
                    }
                }
            }
            Assert.Fail("the private sdxl-host did not open pipe '" + PipeName + "' within 30 s");
        }
    }
}
