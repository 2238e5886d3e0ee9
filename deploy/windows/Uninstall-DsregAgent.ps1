<#
.SYNOPSIS
    Removes dsreg-agent: the service (stopped first), the scheduled tasks, the Application
    event log source "dsreg-agent" (its past events stay in the log), the binary and (with
    -RemoveData) the config, log and spool.

.PARAMETER RemoveData
    Also delete "$env:ProgramData\dsreg-agent" (config, token, unsent reports). Without it the
    data stays, so a reinstall delivers what was spooled.
#>
[CmdletBinding(SupportsShouldProcess)]
param([switch] $RemoveData)

$ErrorActionPreference = 'Stop'
$serviceName = 'dsreg-agent'
$service = Get-Service -Name $serviceName -ErrorAction SilentlyContinue
if ($service) {
    if ($service.Status -ne 'Stopped') {
        Stop-Service -Name $serviceName -Force -ErrorAction SilentlyContinue
        $service.WaitForStatus('Stopped', (New-TimeSpan -Seconds 60))
    }
    & sc.exe delete $serviceName | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "sc.exe delete $serviceName failed with exit code $LASTEXITCODE" }
}
$taskPath = '\dsreg-fleet\'
foreach ($name in 'dsreg-agent (SYSTEM)', 'dsreg-agent (user)') {
    $task = Get-ScheduledTask -TaskPath $taskPath -TaskName $name -ErrorAction SilentlyContinue
    if ($task) {
        Stop-ScheduledTask -TaskPath $taskPath -TaskName $name -ErrorAction SilentlyContinue
        Unregister-ScheduledTask -TaskPath $taskPath -TaskName $name -Confirm:$false
    }
}
if ([System.Diagnostics.EventLog]::SourceExists($serviceName)) {
    [System.Diagnostics.EventLog]::DeleteEventSource($serviceName)
}
Remove-Item -Recurse -Force -ErrorAction SilentlyContinue (Join-Path $env:ProgramFiles 'dsreg-agent')
if ($RemoveData) {
    Remove-Item -Recurse -Force -ErrorAction SilentlyContinue (Join-Path $env:ProgramData 'dsreg-agent')
}
Write-Output 'dsreg-agent removed.'
