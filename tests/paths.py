"""Where the test data from outside the project lives (read in place, never copied)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_TESTDATA = ROOT.parent / "shared" / "testdata"
SIGV4_SUITE = SHARED_TESTDATA / "aws-sigv4-test-suite"
BEDROCK_CAPTURES = SHARED_TESTDATA / "bedrock-captures"
