"""newsbot: conflict news alerts, digests and answers for Telegram and Slack."""

__version__ = "0.1.0"
