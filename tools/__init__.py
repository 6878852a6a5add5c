"""Commands around the pipelines that are not Beam pipelines themselves: the generator, the
replay, the calibration check, the committed-files listing."""
