// The seed design's integration test (docs: ../shared/seed/implementation-strategy.md, "Integration
// Testing Plan"), as the C# service's developers wrote it. Changed: the model name (the goldens'
// tiny SDXL, copied into the test host's models_root as checkpoints/tiny by the ctest runner).
// The LoRA line is the seed's own: loras/test_lora.safetensors is the goldens' kohya test LoRA,
// made for that tiny model. The fixture around it (the service's construction) is ours: the
// service is configured as a deployment would be, with the host's pipe and the tiny model's native
// size for requests that set none (SDXL's 1024x1024 default would take minutes on this model).

using System.Collections.Generic;
using System.Threading.Tasks;
using NUnit.Framework;
using SdxlHost.Client;

namespace SdxlHost.Client.Tests
{
    /// <summary>The seed document's end-to-end test against sdxl-host with the product plugins.</summary>
    [TestFixture]
    public class SeedIntegrationTests
    {
        private EnhancedSDXLService _enhancedSdxlService;

        [SetUp]
        public void SetUp()
        {
            _enhancedSdxlService = new EnhancedSDXLService(new SdxlHostClientOptions
            {
                PipeName = TestEnvironment.PipeName,
                Defaults = new GenerationDefaults { Width = 64, Height = 64 },
            });
        }

        [TearDown]
        public void TearDown()
        {
            _enhancedSdxlService.Dispose();
        }

        [Test]
        public async Task TestEnhancedSDXLEndToEnd()
        {
            // Arrange
            var request = new EnhancedSDXLRequest
            {
                Conditioning = new ConditioningConfiguration 
                { 
                    Prompt = "Test prompt",
                    LoRAs = new List<LoRAConfiguration> 
                    { 
                        new LoRAConfiguration { ModelPath = "test_lora", Weight = 0.8 } 
                    }
                },
                Model = new SDXLModelConfiguration { Base = "tiny" }
            };
            
            // Act
            var response = await _enhancedSdxlService.GenerateEnhancedAsync(request);
            
            // Assert
            Assert.IsTrue(response.Success);
            Assert.IsNotNull(response.GeneratedImages);
            Assert.Greater(response.GeneratedImages.Count, 0);
        }
    }
}
