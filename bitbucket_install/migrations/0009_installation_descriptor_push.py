"""The outcome of the last push of the descriptor to each installation
(``bitbucket_install_push_descriptor``): when Bitbucket accepted it, or why it failed."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bitbucket_install", "0008_forge_installation"),
    ]

    operations = [
        migrations.AddField(
            model_name="installation",
            name="descriptor_pushed_at",
            field=models.DateTimeField(
                blank=True, editable=False, null=True, verbose_name="descriptor pushed"
            ),
        ),
        migrations.AddField(
            model_name="installation",
            name="descriptor_push_error",
            field=models.CharField(
                blank=True, editable=False, max_length=255, verbose_name="descriptor push error"
            ),
        ),
    ]
