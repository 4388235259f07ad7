"""The version of this firmware image (the image build generates this module for each release)."""
VERSION = "0.1.0"
