<#
.SYNOPSIS
    Removes dsreg-agent: both scheduled tasks, the binary and (with -RemoveData) the config and
    spool.

.PARAMETER RemoveData
    Also delete "$env:ProgramData\dsreg-agent" (config, token, unsent reports). Without it the
    data stays, so a reinstall delivers what was spooled.
#>
[CmdletBinding(SupportsShouldProcess)]
param([switch] $RemoveData)

$ErrorActionPreference = 'Stop'
$taskPath = '\dsreg-fleet\'
foreach ($name in 'dsreg-agent (SYSTEM)', 'dsreg-agent (user)') {
    $task = Get-ScheduledTask -TaskPath $taskPath -TaskName $name -ErrorAction SilentlyContinue
    if ($task) {
        Stop-ScheduledTask -TaskPath $taskPath -TaskName $name -ErrorAction SilentlyContinue
        Unregister-ScheduledTask -TaskPath $taskPath -TaskName $name -Confirm:$false
    }
}
Remove-Item -Recurse -Force -ErrorAction SilentlyContinue (Join-Path $env:ProgramFiles 'dsreg-agent')
if ($RemoveData) {
    Remove-Item -Recurse -Force -ErrorAction SilentlyContinue (Join-Path $env:ProgramData 'dsreg-agent')
}
Write-Output 'dsreg-agent removed.'
